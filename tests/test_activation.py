"""Activations, softmax / log_softmax, PReLU and dropout: a float64 numpy reference and float64
finite differences (these run without PyTorch), PyTorch parity (values and autograd
gradients; skipped without PyTorch), overflow, statistics and reproducibility."""
import numpy as np
import pytest

from conftest import numeric_grad
import pycore
import pycore.functional as F
import pycore.nn as nn
from pycore.testing import gradcheck

TOL = {np.float32: dict(rtol=2e-6, atol=1e-6), np.float64: dict(rtol=1e-12, atol=1e-13)}


def np_softmax(x, dim):
    shifted = x - x.max(axis=dim, keepdims=True)
    e = np.exp(shifted)
    return e / e.sum(axis=dim, keepdims=True)


def np_log_softmax(x, dim):
    shifted = x - x.max(axis=dim, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=dim, keepdims=True))


def np_sigmoid(x):
    return 1 / (1 + np.exp(-x))


# name -> (pycore module factory, float64 numpy reference of the forward,
#          torch function given the torch module: for the parity tests only)
ACTIVATIONS = {
    "relu": (lambda dt: nn.ReLU(dtype=dt), lambda x: np.maximum(x, 0), lambda torch: torch.relu),
    "leaky_relu": (lambda dt: nn.LeakyReLU(0.2, dtype=dt), lambda x: np.where(x > 0, x, 0.2 * x),
                   lambda torch: lambda t: torch.nn.functional.leaky_relu(t, 0.2)),
    "leaky_relu_negative": (lambda dt: nn.LeakyReLU(-0.5, dtype=dt), lambda x: np.where(x > 0, x, -0.5 * x),
                            lambda torch: lambda t: torch.nn.functional.leaky_relu(t, -0.5)),
    "sigmoid": (lambda dt: nn.Sigmoid(dtype=dt), np_sigmoid, lambda torch: torch.sigmoid),
    "tanh": (lambda dt: nn.Tanh(dtype=dt), np.tanh, lambda torch: torch.tanh),
    "softmax_last": (lambda dt: nn.Softmax(-1, dtype=dt), lambda x: np_softmax(x, -1),
                     lambda torch: lambda t: torch.softmax(t, -1)),
    "softmax_1": (lambda dt: nn.Softmax(1, dtype=dt), lambda x: np_softmax(x, 1),
                  lambda torch: lambda t: torch.softmax(t, 1)),
    "softmax_0": (lambda dt: nn.Softmax(0, dtype=dt), lambda x: np_softmax(x, 0),
                  lambda torch: lambda t: torch.softmax(t, 0)),
    "log_softmax_last": (lambda dt: nn.LogSoftmax(-1, dtype=dt), lambda x: np_log_softmax(x, -1),
                         lambda torch: lambda t: torch.log_softmax(t, -1)),
    "log_softmax_1": (lambda dt: nn.LogSoftmax(1, dtype=dt), lambda x: np_log_softmax(x, 1),
                      lambda torch: lambda t: torch.log_softmax(t, 1)),
    "prelu": (lambda dt: nn.PReLU(dtype=dt), lambda x: np.where(x > 0, x, 0.25 * x),
              lambda torch: lambda t: torch.nn.functional.prelu(t, torch.full((1,), 0.25, dtype=t.dtype))),
    "gelu": (lambda dt: nn.GELU(dtype=dt), None, lambda torch: torch.nn.functional.gelu),
    "silu": (lambda dt: nn.SiLU(dtype=dt), lambda x: x * np_sigmoid(x), lambda torch: torch.nn.functional.silu),
}
# float32 tolerances of the numpy-implemented ones (GELU's float32 erf is within 1.5e-7)
LOOSE = {"gelu", "silu", "prelu"}


def torch_forward_backward(fn, x, gy):
    torch = pytest.importorskip("torch")
    xt = torch.from_numpy(x.copy()).requires_grad_(True)
    yt = fn(xt)
    yt.backward(torch.from_numpy(gy))
    return yt.detach().numpy(), xt.grad.numpy()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", list(ACTIVATIONS))
@pytest.mark.parametrize("shape", [(3, 5, 7), (2, 300, 4), (1, 1, 1)])
def test_forward_and_backward_match_torch(simd_path, rng, dtype, name, shape):
    torch = pytest.importorskip("torch")
    make, _, torch_fn = ACTIVATIONS[name]
    x = (3 * rng.standard_normal(shape)).astype(dtype)
    x.flat[0] = 0.0  # the kink of relu / leaky_relu: torch's convention is gradient 0 / slope
    gy = rng.standard_normal(shape).astype(dtype)
    y_ref, gx_ref = torch_forward_backward(torch_fn(torch), x, gy)
    tol = dict(rtol=1e-5, atol=1e-6) if name in LOOSE and dtype == np.float32 else TOL[dtype]
    m = make(dtype)
    y = m(x)
    assert y.dtype == dtype and y.shape == x.shape
    np.testing.assert_allclose(y, y_ref, **tol)
    np.testing.assert_allclose(m.backward(gy), gx_ref, **tol)


@pytest.mark.parametrize("name", [n for n in ACTIVATIONS if ACTIVATIONS[n][1] is not None])
def test_forward_matches_a_numpy_reference(simd_path, rng, name):
    make, reference, _ = ACTIVATIONS[name]
    x = 3 * rng.standard_normal((3, 5, 7))
    np.testing.assert_allclose(make(np.float64)(x), reference(x), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("name", list(ACTIVATIONS))
def test_gradient_finite_differences(simd_path, rng, name):
    m = ACTIVATIONS[name][0](np.float64)
    x = rng.standard_normal((3, 4, 5))
    x[np.abs(x) < 1e-3] = 0.5  # keep finite differences away from relu's kink
    gy = rng.standard_normal(x.shape)
    m(x)
    gx = m.backward(gy)
    np.testing.assert_allclose(gx, numeric_grad(m, x, gy), rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("name", ["relu", "leaky_relu", "sigmoid", "tanh", "softmax_1", "log_softmax_last",
                                  "gelu", "silu"])
def test_functional_pair_matches_the_module(rng, name):
    """F.<op>_forward returns the module's output and a ctx; F.<op>_backward(grad_output, ctx)
    the module's input gradient, bit for bit (the module is a holder around the pair)."""
    op = {"softmax_1": "softmax", "log_softmax_last": "log_softmax"}.get(name, name)
    args = {"leaky_relu": (0.2,), "softmax_1": (1,), "log_softmax_last": (-1,)}.get(name, ())
    x = rng.standard_normal((4, 6)).astype(np.float32)
    gy = rng.standard_normal(x.shape).astype(np.float32)
    m = ACTIVATIONS[name][0](np.float32)
    y, ctx = getattr(F, op + "_forward")(x, *args)
    np.testing.assert_array_equal(y, m(x))
    np.testing.assert_array_equal(y, getattr(F, op)(x, *args))
    np.testing.assert_array_equal(getattr(F, op + "_backward")(gy, ctx), m.backward(gy))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("log", [False, True])
def test_softmax_is_overflow_safe(dtype, log):
    x = np.array([[1e4, -1e4, 0.0, 1e4 - 1.0], [-1e4, -1e4 + 2.0, -1e4, -1e4 + 0.5]], dtype=dtype)
    fn = F.log_softmax if log else F.softmax
    y = fn(x, dim=1)
    x64 = x.astype(np.float64)
    shifted = x64 - x64.max(axis=1, keepdims=True)
    ref_log = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    ref = ref_log if log else np.exp(ref_log)
    assert np.all(np.isfinite(y))
    np.testing.assert_allclose(y, ref, rtol=1e-6, atol=1e-30 if not log else 1e-6)
    gy = np.ones_like(x)
    ctx = (F.log_softmax_forward if log else F.softmax_forward)(x, dim=1)[1]
    assert np.all(np.isfinite((F.log_softmax_backward if log else F.softmax_backward)(gy, ctx)))


@pytest.mark.parametrize("dim", [1, -1])
def test_log_softmax_float64_log_of_sum_on_every_path(simd_path, rng, dim):
    # log_softmax's log of the row sum is fastmath::log_of_sum (vectorised over the
    # channels of dim=1): sums from 1 to ~6e5 (weights of up to 1e3 over up to 600 values),
    # the mantissa around sqrt(2) and powers of two included, match numpy's float64 log.
    weights = [np.exp(rng.uniform(-30, 7, (6, n, 17))) for n in (1, 2, 3, 17, 600)]
    sums = np.array([np.sqrt(2) * 2.0 ** k for k in range(8)] + [2.0 ** k for k in range(1, 9)])
    sums = np.concatenate([sums * (1 + d) for d in (0.0, 1e-15, -1e-15, 1e-9)])
    weights.append((sums - 1.0).reshape(1, 1, -1))  # rows (0, log(s - 1)): sums s
    for w in weights:
        x = np.log(np.concatenate([np.ones((w.shape[0], 1, w.shape[2])), w], axis=1))  # max term exp(0) = 1
        x = np.ascontiguousarray(np.moveaxis(x, 1, -1)) if dim == -1 else x
        shifted = x - x.max(axis=dim, keepdims=True)
        ref = shifted - np.log(np.exp(shifted).sum(axis=dim, keepdims=True))
        np.testing.assert_allclose(F.log_softmax(x, dim=dim), ref, rtol=1e-14, atol=1e-14)


def test_softmax_every_axis_and_non_contiguous(rng):
    base = rng.standard_normal((4, 5, 6, 3))
    for x in (base, base[:, ::2, :, ::-1], base.transpose(2, 0, 3, 1)):
        for dim in range(-x.ndim, x.ndim):
            np.testing.assert_allclose(F.softmax(x, dim), np_softmax(x, dim), rtol=1e-12, atol=1e-14)
            np.testing.assert_allclose(F.log_softmax(x, dim), np_log_softmax(x, dim), rtol=1e-12, atol=1e-14)


def test_softmax_without_dim_follows_torchs_legacy_rule(rng):
    x = rng.standard_normal((2, 3, 4)).astype(np.float32)
    with pytest.warns(UserWarning, match="Implicit dimension"):
        y = nn.Softmax()(x)
    np.testing.assert_allclose(y, np_softmax(x.astype(np.float64), 0), rtol=1e-6)


@pytest.mark.parametrize("name", ["relu", "sigmoid", "tanh", "softmax_1"])
def test_non_contiguous_inputs(rng, name):
    base = rng.standard_normal((6, 8, 5)).astype(np.float32)
    x = base[::2, ::-1].transpose(2, 0, 1)
    m = ACTIVATIONS[name][0](np.float32)
    np.testing.assert_array_equal(m(x), m(np.ascontiguousarray(x)))


@pytest.mark.parametrize("name", ["relu", "leaky_relu", "sigmoid", "tanh", "softmax_last", "softmax_0"])
def test_one_and_two_threads_identical(rng, name):
    x = rng.standard_normal((64, 2048)).astype(np.float32)
    gy = rng.standard_normal(x.shape).astype(np.float32)
    before = pycore.get_num_threads()
    out = []
    try:
        for n in (1, 2):
            pycore.set_num_threads(n)
            m = ACTIVATIONS[name][0](np.float32)
            out.append((m(x), m.backward(gy)))
    finally:
        pycore.set_num_threads(before)
    np.testing.assert_array_equal(out[0][0], out[1][0])
    np.testing.assert_array_equal(out[0][1], out[1][1])


@pytest.mark.parametrize("shape", [(3, 5, 300),    # whole inner rows per task
                                   (1, 6, 784),    # one outer index at 2 threads: blocks of the inner axis
                                   (2, 70, 1000)])  # a (dim, inner) slab over 256 KiB: blocks
@pytest.mark.parametrize("log_output", [False, True])
def test_softmax_middle_axis_slabs_at_one_and_two_threads(simd_path, rng, shape, log_output):
    # csrc/elementwise.cpp's for_each_slab cuts (outer, dim, inner) into whole-row or
    # blocked tasks by size and thread count: each cut against float64 numpy, forward and
    # backward, at 1 and 2 threads.
    x = rng.standard_normal(shape).astype(np.float32) * 3
    gy = rng.standard_normal(shape).astype(np.float32)
    x64, g64 = x.astype(np.float64), gy.astype(np.float64)
    if log_output:
        y_ref = np_log_softmax(x64, 1)
        dx_ref = g64 - np.exp(y_ref) * g64.sum(axis=1, keepdims=True)
        forward, backward = F.log_softmax_forward, F.log_softmax_backward
    else:
        y_ref = np_softmax(x64, 1)
        dx_ref = y_ref * (g64 - (g64 * y_ref).sum(axis=1, keepdims=True))
        forward, backward = F.softmax_forward, F.softmax_backward
    before = pycore.get_num_threads()
    try:
        for n in (1, 2):
            pycore.set_num_threads(n)
            y, ctx = forward(x, 1)
            np.testing.assert_allclose(y, y_ref, rtol=2e-6, atol=2e-6)
            np.testing.assert_allclose(backward(gy, ctx), dx_ref, rtol=1e-5, atol=1e-5)
    finally:
        pycore.set_num_threads(before)


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(TypeError, match="float32 or float64"):
        F.relu(np.arange(4))
    with pytest.raises(TypeError, match="numpy array"):
        F.sigmoid("abc")
    with pytest.raises(ValueError, match="dim out of range"):
        F.softmax(np.zeros((2, 3)), dim=2)
    with pytest.raises(TypeError, match="dim"):
        F.log_softmax(np.zeros((2, 3)), dim=1.0)
    with pytest.raises(TypeError, match="negative_slope"):
        nn.LeakyReLU("0.1")
    with pytest.raises(ValueError, match="grad_output"):
        F.tanh_backward(np.zeros(3), np.zeros(4))
    with pytest.raises(TypeError, match="dtype"):
        F.sigmoid_backward(np.zeros(3, np.float32), np.zeros(3))
    m = nn.Tanh()
    with pytest.raises(TypeError, match="Tanh.*int64"):
        m(np.zeros(3, np.int64))
    with pytest.raises(RuntimeError, match="forward first"):
        m.backward(np.zeros(3, np.float32))
    m.requires_input_grad = False
    m(np.zeros(3, np.float32))
    assert m.backward(np.zeros(3, np.float32)) is None
    assert m(np.zeros(3)).dtype == np.float64  # no weights: either float dtype, as in PyTorch


# -- dropout ----------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("p", [0.1, 0.5, 0.8])
def test_dropout_statistics_and_gradient(simd_path, dtype, p):
    x = np.ones((200, 500), dtype=dtype)
    m = nn.Dropout(p, dtype=dtype)
    y = m(x)
    kept = y != 0
    # 100000 Bernoulli draws: the kept fraction is within 5 standard deviations of 1 - p
    assert abs(kept.mean() - (1 - p)) < 5 * np.sqrt(p * (1 - p) / x.size)
    np.testing.assert_allclose(y[kept], 1 / (1 - p), rtol=1e-6)
    gy = np.arange(x.size, dtype=dtype).reshape(x.shape)
    np.testing.assert_array_equal(m.backward(gy), np.where(kept, gy * dtype(1 / (1 - p)), 0))


def test_dropout_reproducible_under_manual_seed(rng):
    x = rng.standard_normal((30, 40)).astype(np.float32)
    pycore.manual_seed(7)
    a = F.dropout(x, 0.3)
    b = F.dropout(x, 0.3)
    pycore.manual_seed(7)
    np.testing.assert_array_equal(F.dropout(x, 0.3), a)
    assert not np.array_equal(a, b)


def test_dropout_identity_and_zero_cases(rng):
    x = rng.standard_normal((5, 6)).astype(np.float32)
    m = nn.Dropout(0.5)
    m.eval()
    np.testing.assert_array_equal(m(x), x)
    np.testing.assert_array_equal(m.backward(x), x)
    np.testing.assert_array_equal(F.dropout(x, 0.0), x)
    np.testing.assert_array_equal(F.dropout(x, 0.7, training=False), x)
    m1 = nn.Dropout(1.0)
    np.testing.assert_array_equal(m1(x), np.zeros_like(x))
    np.testing.assert_array_equal(m1.backward(x), np.zeros_like(x))


def test_dropout_gradient_finite_differences(rng):
    x = rng.standard_normal((4, 5))
    gy = rng.standard_normal(x.shape)
    m = nn.Dropout(0.4, dtype=np.float64)

    def seeded_forward(v):
        pycore.manual_seed(3)
        return m(v)

    seeded_forward(x)
    gx = m.backward(gy)
    np.testing.assert_allclose(gx, numeric_grad(seeded_forward, x, gy), rtol=1e-6, atol=1e-8)


def test_dropout_bad_arguments():
    with pytest.raises(ValueError, match="probability"):
        nn.Dropout(1.5)
    with pytest.raises(ValueError, match="probability"):
        F.dropout(np.zeros(3), -0.1)
    with pytest.raises(TypeError, match="p"):
        F.dropout(np.zeros(3), "0.5")


@pytest.mark.parametrize("name", ["relu", "leaky_relu", "sigmoid", "tanh", "softmax_last", "log_softmax_last"])
def test_extreme_and_non_finite_inputs_match_torch(simd_path, name):
    torch = pytest.importorskip("torch")
    make, _, torch_fn = ACTIVATIONS[name]
    torch_fn = torch_fn(torch)
    x = np.array([[-1e4, -100.0, -0.0, 0.0, 100.0, 1e4], [-np.inf, np.inf, np.nan, 1.0, -1.0, 0.5]],
                 dtype=np.float32)
    np.testing.assert_allclose(make(np.float32)(x), torch_fn(torch.from_numpy(x)).numpy(), rtol=1e-6, atol=1e-30)


# -- PReLU: the activation with a learnable weight ---------------------------------------------

def prelu_reference(x, weight, gy):
    """float64 numpy: y, dL/dx and dL/dweight of PReLU with weight per channel (axis 1) or shared."""
    w = weight.reshape((1, -1) + (1,) * (x.ndim - 2)) if weight.size > 1 else weight.reshape(())
    y = np.where(x > 0, x, w * x)
    gx = np.where(x > 0, gy, w * gy)
    per_element = np.where(x > 0, 0.0, gy * x)
    gw = per_element.sum(axis=tuple(a for a in range(x.ndim) if weight.size == 1 or a != 1)).reshape(weight.shape)
    return y, gx, gw


# The kernel's paths (csrc/elementwise.cpp): channels on the contiguous axis ((N, C): a weight
# row per row), rows of H*W values with one slope, cut into blocks of 4096 for the weight
# gradient (70 x 70 = 4900: two blocks), one slope over the whole array; sizes off
# multiples of 16 so that every vector loop has a tail.
PRELU_SHAPES = [(1, (2, 3, 4, 5)), (3, (2, 3, 4, 5)), (4, (5, 4)), (1, (7,)), (37, (3, 37)), (3, (2, 3, 70, 70)),
                (1, (3, 5001)), (5, (1, 5, 1, 1))]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("num_parameters, shape", PRELU_SHAPES)
def test_prelu_matches_a_numpy_reference(simd_path, rng, dtype, num_parameters, shape):
    m = nn.PReLU(num_parameters, init=0.1, dtype=dtype)
    m.weight.data[...] = rng.uniform(-0.5, 0.5, num_parameters)
    x, gy = rng.standard_normal(shape).astype(dtype), rng.standard_normal(shape).astype(dtype)
    x.flat[0] = 0.0  # the kink: x > 0 is false there (torch's convention)
    y_ref, gx_ref, gw_ref = prelu_reference(x.astype(np.float64), m.weight.data.astype(np.float64),
                                            gy.astype(np.float64))
    y = m(x)
    gx = m.backward(gy)
    assert y.dtype == gx.dtype == m.weight.grad.dtype == dtype
    # the select and one product per element: exact in either dtype
    np.testing.assert_array_equal(y, y_ref.astype(dtype))
    np.testing.assert_array_equal(gx, gx_ref.astype(dtype))
    # the weight gradient is summed in double, then rounded once to dtype
    np.testing.assert_allclose(m.weight.grad, gw_ref, rtol=1e-12 if dtype == np.float64 else 1e-6, atol=1e-12)


@pytest.mark.parametrize("num_parameters, shape", [(1, (4, 8, 64, 64)), (8, (4, 8, 64, 64)), (1000, (96, 1000))])
def test_prelu_is_thread_count_independent(simd_path, rng, num_parameters, shape):
    """The weight gradient's sums have a fixed order (blocks of a row, then rows in order;
    for (N, C) each column in row order), so 1 and 2 threads give the same bits."""
    x, gy = rng.standard_normal(shape).astype(np.float32), rng.standard_normal(shape).astype(np.float32)
    weight = rng.uniform(-0.5, 0.5, num_parameters).astype(np.float32)
    results = []
    before = pycore.get_num_threads()
    try:
        for threads in (1, 2):
            pycore.set_num_threads(threads)
            y, ctx = F.prelu_forward(x, weight)
            grad_weight = np.zeros_like(weight)
            results.append((y, F.prelu_backward(gy, ctx, grad_weight), grad_weight))
    finally:
        pycore.set_num_threads(before)
    for one, two in zip(*results):
        np.testing.assert_array_equal(one, two)


def test_prelu_propagates_nan_and_inf(rng):
    x = np.array([[np.nan, -np.inf, np.inf, -0.0]], np.float32).repeat(2, axis=0).reshape(2, 4)
    weight = np.array([0.25], np.float32)
    y, ctx = F.prelu_forward(x, weight)
    np.testing.assert_array_equal(y, np.where(x > 0, x, 0.25 * x))
    grad_weight = np.zeros(1, np.float32)
    gx = F.prelu_backward(np.ones_like(x), ctx, grad_weight)
    np.testing.assert_array_equal(gx, np.where(x > 0, 1.0, 0.25).astype(np.float32))
    assert np.isnan(grad_weight[0])  # x = NaN is not > 0: NaN * 1 goes into the sum


@pytest.mark.parametrize("num_parameters", [1, 3])
def test_prelu_gradcheck(rng, num_parameters):
    x = rng.standard_normal((2, 3, 4))
    x[np.abs(x) < 1e-3] = 0.5  # away from the kink
    assert gradcheck(nn.PReLU(num_parameters, init=-0.3, dtype=np.float64), x)


def test_prelu_weight_gradient_without_input_gradient_and_frozen(rng):
    """requires_input_grad=False skips dL/dx only: the slope still learns (the old
    _Activation.backward returned before any work). A frozen slope gets no gradient."""
    x, gy = rng.standard_normal((4, 2, 3)), rng.standard_normal((4, 2, 3))
    m = nn.PReLU(2, dtype=np.float64)
    _, gx_ref, gw_ref = prelu_reference(x, m.weight.data, gy)
    m.requires_input_grad = False
    m(x)
    assert m.backward(gy) is None
    np.testing.assert_allclose(m.weight.grad, gw_ref, rtol=1e-12)
    m.requires_input_grad = True
    m.weight.requires_grad = False
    m(x)
    np.testing.assert_allclose(m.backward(gy), gx_ref, rtol=1e-14)
    assert m.weight.grad is None
    m.weight.requires_grad = True
    m.weight.grad = None  # set_to_none: the next backward creates it
    m(x)
    m.backward(gy)
    np.testing.assert_allclose(m.weight.grad, gw_ref, rtol=1e-12)


def test_prelu_functional_pair_and_bad_arguments(rng):
    x, gy = rng.standard_normal((2, 3, 4)), rng.standard_normal((2, 3, 4))
    weight = np.array([0.1, -0.2, 0.3])
    y, ctx = F.prelu_forward(x, weight)
    np.testing.assert_array_equal(y, F.prelu(x, weight))
    grad_weight = np.zeros(3)
    grad_x = F.prelu_backward(gy, ctx, grad_weight)
    _, gx_ref, gw_ref = prelu_reference(x, weight, gy)
    np.testing.assert_allclose(grad_x, gx_ref, rtol=1e-14)
    np.testing.assert_allclose(grad_weight, gw_ref, rtol=1e-12)
    assert F.prelu_backward(gy, ctx, grad_weight, need_input_grad=False) is None
    np.testing.assert_allclose(grad_weight, 2 * gw_ref, rtol=1e-12)  # accumulates (+=)
    with pytest.raises(ValueError, match=r"weight: 3 parameters need the input's channel axis 1 to have 3"):
        F.prelu(np.zeros((2, 4)), weight)
    with pytest.raises(ValueError, match="channels: none"):
        F.prelu(np.zeros(3), weight)
    with pytest.raises(TypeError, match="weight: dtype float32 does not match"):
        F.prelu(x, weight.astype(np.float32))
    with pytest.raises(TypeError, match="ctx: expected the PReLUContext that prelu_forward returned"):
        F.prelu_backward(gy, (x, weight))
    with pytest.raises(ValueError, match=r"grad_weight: expected shape \(3,\)"):
        F.prelu_backward(gy, ctx, np.zeros(2))
    with pytest.raises(ValueError, match="num_parameters: expected an int >= 1"):
        nn.PReLU(0)
    with pytest.raises(TypeError, match="init: expected a float"):
        nn.PReLU(init="0.25")
    with pytest.raises(ValueError, match="channel axis 1"):
        nn.PReLU(3)(np.zeros((2, 4), np.float32))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("num_parameters, shape", [(1, (2, 3, 5, 5)), (3, (2, 3, 5, 5)), (6, (4, 6)),
                                                   (1, (2, 3, 70, 70)), (3, (2, 3, 70, 70)), (37, (5, 37))])
def test_prelu_matches_torch_with_state_dict_round_trip(simd_path, rng, dtype, num_parameters, shape):
    torch = pytest.importorskip("torch")
    ref = torch.nn.PReLU(num_parameters, init=0.1, dtype=torch.float64 if dtype == np.float64 else torch.float32)
    with torch.no_grad():
        ref.weight.uniform_(-0.5, 0.5)
    ours = nn.PReLU(num_parameters, dtype=dtype)
    ours.load_state_dict({k: v.detach().numpy() for k, v in ref.state_dict().items()})
    assert list(ours.state_dict()) == list(ref.state_dict()) == ["weight"]
    x = (2 * rng.standard_normal(shape)).astype(dtype)
    x.flat[0] = 0.0  # torch's convention at the kink: dL/dx = weight * grad, no weight gradient
    gy = rng.standard_normal(shape).astype(dtype)
    xt = torch.from_numpy(x.copy()).requires_grad_(True)
    yt = ref(xt)
    yt.backward(torch.from_numpy(gy))
    tol = dict(rtol=1e-5, atol=1e-6) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(ours(x), yt.detach().numpy(), **tol)
    np.testing.assert_allclose(ours.backward(gy), xt.grad.numpy(), **tol)
    np.testing.assert_allclose(ours.weight.grad, ref.weight.grad.numpy(), **tol)
    # and back: pycore's state_dict loads into torch with the same numbers
    ours.weight.data[...] = rng.uniform(-1, 1, num_parameters).astype(dtype)
    fresh = torch.nn.PReLU(num_parameters, dtype=ref.weight.dtype)
    fresh.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in ours.state_dict().items()})
    np.testing.assert_array_equal(fresh.weight.detach().numpy(), ours.weight.data)
