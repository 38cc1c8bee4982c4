"""Activations, softmax / log_softmax and dropout: against PyTorch (values and autograd
gradients), float64 finite differences, overflow, statistics and reproducibility."""
import numpy as np
import pytest

from conftest import numeric_grad
import pycore
import pycore.functional as F
import pycore.nn as nn

torch = pytest.importorskip("torch")

TOL = {np.float32: dict(rtol=2e-6, atol=1e-6), np.float64: dict(rtol=1e-12, atol=1e-13)}

# name -> (pycore module factory, torch function)
ACTIVATIONS = {
    "relu": (lambda dt: nn.ReLU(dtype=dt), torch.relu),
    "leaky_relu": (lambda dt: nn.LeakyReLU(0.2, dtype=dt), lambda t: torch.nn.functional.leaky_relu(t, 0.2)),
    "leaky_relu_negative": (lambda dt: nn.LeakyReLU(-0.5, dtype=dt),
                            lambda t: torch.nn.functional.leaky_relu(t, -0.5)),
    "sigmoid": (lambda dt: nn.Sigmoid(dtype=dt), torch.sigmoid),
    "tanh": (lambda dt: nn.Tanh(dtype=dt), torch.tanh),
    "softmax_last": (lambda dt: nn.Softmax(-1, dtype=dt), lambda t: torch.softmax(t, -1)),
    "softmax_1": (lambda dt: nn.Softmax(1, dtype=dt), lambda t: torch.softmax(t, 1)),
    "softmax_0": (lambda dt: nn.Softmax(0, dtype=dt), lambda t: torch.softmax(t, 0)),
    "log_softmax_last": (lambda dt: nn.LogSoftmax(-1, dtype=dt), lambda t: torch.log_softmax(t, -1)),
    "log_softmax_1": (lambda dt: nn.LogSoftmax(1, dtype=dt), lambda t: torch.log_softmax(t, 1)),
}


def torch_forward_backward(fn, x, gy):
    xt = torch.from_numpy(x.copy()).requires_grad_(True)
    yt = fn(xt)
    yt.backward(torch.from_numpy(gy))
    return yt.detach().numpy(), xt.grad.numpy()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", list(ACTIVATIONS))
@pytest.mark.parametrize("shape", [(3, 5, 7), (2, 300, 4), (1, 1, 1)])
def test_forward_and_backward_match_torch(simd_path, rng, dtype, name, shape):
    make, torch_fn = ACTIVATIONS[name]
    x = (3 * rng.standard_normal(shape)).astype(dtype)
    x.flat[0] = 0.0  # the kink of relu / leaky_relu: torch's convention is gradient 0 / slope
    gy = rng.standard_normal(shape).astype(dtype)
    y_ref, gx_ref = torch_forward_backward(torch_fn, x, gy)
    m = make(dtype)
    y = m(x)
    assert y.dtype == dtype and y.shape == x.shape
    np.testing.assert_allclose(y, y_ref, **TOL[dtype])
    np.testing.assert_allclose(m.backward(gy), gx_ref, **TOL[dtype])


@pytest.mark.parametrize("name", list(ACTIVATIONS))
def test_gradient_finite_differences(simd_path, rng, name):
    m = ACTIVATIONS[name][0](np.float64)
    x = rng.standard_normal((3, 4, 5))
    x[np.abs(x) < 1e-3] = 0.5  # keep finite differences away from relu's kink
    gy = rng.standard_normal(x.shape)
    m(x)
    gx = m.backward(gy)
    np.testing.assert_allclose(gx, numeric_grad(m, x, gy), rtol=1e-6, atol=1e-8)


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
    assert np.all(np.isfinite((F.log_softmax_backward if log else F.softmax_backward)(gy, y, dim=1)))


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
            ref = torch.softmax(torch.from_numpy(np.ascontiguousarray(x)), dim).numpy()
            np.testing.assert_allclose(F.softmax(x, dim), ref, rtol=1e-12, atol=1e-14)
            ref = torch.log_softmax(torch.from_numpy(np.ascontiguousarray(x)), dim).numpy()
            np.testing.assert_allclose(F.log_softmax(x, dim), ref, rtol=1e-12, atol=1e-14)


def test_softmax_without_dim_follows_torchs_legacy_rule(rng):
    x = rng.standard_normal((2, 3, 4)).astype(np.float32)
    with pytest.warns(UserWarning, match="Implicit dimension"):
        y = nn.Softmax()(x)
    np.testing.assert_allclose(y, torch.softmax(torch.from_numpy(x), 0).numpy(), rtol=1e-6)


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
    make, torch_fn = ACTIVATIONS[name]
    x = np.array([[-1e4, -100.0, -0.0, 0.0, 100.0, 1e4], [-np.inf, np.inf, np.nan, 1.0, -1.0, 0.5]],
                 dtype=np.float32)
    np.testing.assert_allclose(make(np.float32)(x), torch_fn(torch.from_numpy(x)).numpy(), rtol=1e-6, atol=1e-30)
