"""BatchNorm2d and F.batch_norm: train/eval parity with PyTorch (outputs, gradients, running
statistics over several steps), state_dict loading, finite differences, bad input."""
import numpy as np
import pytest

from conftest import numeric_grad
import pycore
import pycore.functional as F
import pycore.nn as nn

try:  # only the PyTorch-parity tests need it (@requires_torch); the rest run without
    import torch
except ImportError:
    torch = None
requires_torch = pytest.mark.skipif(torch is None, reason="PyTorch is not installed: a parity test")

TOL = {np.float32: dict(rtol=1e-4, atol=1e-5), np.float64: dict(rtol=1e-10, atol=1e-12)}
TORCH_DTYPE = {np.float32: torch.float32, np.float64: torch.float64} if torch else {}


def paired_layers(rng, C, dtype, **kw):
    """A pycore and a torch BatchNorm2d with the same (random) affine parameters."""
    ours = nn.BatchNorm2d(C, dtype=dtype, **kw)
    ref = torch.nn.BatchNorm2d(C, dtype=TORCH_DTYPE[dtype], **kw)
    if ours.affine:
        with torch.no_grad():
            ref.weight.copy_(torch.from_numpy(rng.uniform(0.5, 1.5, C).astype(dtype)))
            ref.bias.copy_(torch.from_numpy(rng.standard_normal(C).astype(dtype)))
    ours.load_state_dict({k: v.numpy() for k, v in ref.state_dict().items()})
    return ours, ref


def check_step(ours, ref, x, gy, dtype):
    xt = torch.from_numpy(x.copy()).requires_grad_(True)
    yt = ref(xt)
    yt.backward(torch.from_numpy(gy))
    y = ours(x)
    gx = ours.backward(gy)
    np.testing.assert_allclose(y, yt.detach().numpy(), **TOL[dtype])
    np.testing.assert_allclose(gx, xt.grad.numpy(), **TOL[dtype])
    if ours.affine:
        np.testing.assert_allclose(ours.weight.grad, ref.weight.grad.numpy(), **TOL[dtype])
        np.testing.assert_allclose(ours.bias.grad, ref.bias.grad.numpy(), **TOL[dtype])
    for key, value in ref.state_dict().items():
        np.testing.assert_allclose(ours.state_dict()[key], value.numpy(), **TOL[dtype])


@requires_torch
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kw", [{}, dict(momentum=0.3), dict(momentum=None), dict(affine=False),
                                dict(track_running_stats=False)])
def test_training_steps_then_eval_match_torch(simd_path, rng, dtype, kw):
    C = 3
    ours, ref = paired_layers(rng, C, dtype, **kw)
    for step in range(3):  # gradients accumulate over the steps, as in torch
        x = (2 * rng.standard_normal((4, C, 5, 6)) + step).astype(dtype)
        gy = rng.standard_normal(x.shape).astype(dtype)
        check_step(ours, ref, x, gy, dtype)
    ours.eval()
    ref.eval()
    x = rng.standard_normal((2, C, 3, 3)).astype(dtype)
    check_step(ours, ref, x, rng.standard_normal(x.shape).astype(dtype), dtype)
    if ours.track_running_stats:
        assert int(ours.num_batches_tracked) == 3 and ours.num_batches_tracked.dtype == np.int64


@requires_torch
def test_state_dict_from_torch_gives_torch_eval_outputs(rng):
    ref = torch.nn.BatchNorm2d(4)
    ref.train()
    for _ in range(5):
        ref(torch.randn(8, 4, 3, 3) * 3 + 1)
    ref.eval()
    ours = nn.BatchNorm2d(4).eval()
    ours.load_state_dict({k: v.numpy() for k, v in ref.state_dict().items()})
    assert int(ours.num_batches_tracked) == 5
    x = rng.standard_normal((2, 4, 5, 5)).astype(np.float32)
    np.testing.assert_allclose(ours(x), ref(torch.from_numpy(x)).detach().numpy(), rtol=1e-5, atol=1e-6)
    assert list(ours.state_dict()) == list(ref.state_dict())
    ours.to(np.float64)
    assert ours.running_mean.dtype == np.float64 and ours.num_batches_tracked.dtype == np.int64


@pytest.mark.parametrize("training", [True, False])
def test_gradient_finite_differences(simd_path, rng, training):
    m = nn.BatchNorm2d(2, dtype=np.float64)
    m.weight.data[:] = [1.5, -0.7]
    m.bias.data[:] = [0.2, 0.1]
    m.running_mean[:] = [0.3, -0.2]
    m.running_var[:] = [2.0, 0.5]
    m.train(training)
    x = rng.standard_normal((3, 2, 2, 3))
    gy = rng.standard_normal(x.shape)
    saved = (m.running_mean.copy(), m.running_var.copy())

    def forward():
        m.running_mean[:], m.running_var[:] = saved  # training updates them; keep every call equal
        return m(x)

    forward()
    gx = m.backward(gy)
    np.testing.assert_allclose(gx, numeric_grad(lambda _: forward(), x, gy), rtol=1e-6, atol=1e-8)
    for p in (m.weight, m.bias):
        grad = p.grad.copy()
        np.testing.assert_allclose(grad, numeric_grad(lambda _: forward(), p.data, gy), rtol=1e-6, atol=1e-8)


@requires_torch
def test_functional_batch_norm_matches_torch(rng):
    x = rng.standard_normal((5, 3, 4, 4)) + 10.0  # a large mean: a one-pass variance would lose digits
    rm, rv = np.zeros(3), np.ones(3)
    w, b = rng.standard_normal(3), rng.standard_normal(3)
    y = F.batch_norm(x, rm, rv, w, b, training=True, momentum=0.2)
    rmt, rvt = torch.zeros(3, dtype=torch.float64), torch.ones(3, dtype=torch.float64)
    yt = torch.nn.functional.batch_norm(torch.from_numpy(x), rmt, rvt, torch.from_numpy(w), torch.from_numpy(b),
                                        training=True, momentum=0.2)
    np.testing.assert_allclose(y, yt.numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(rm, rmt.numpy(), rtol=1e-12)
    np.testing.assert_allclose(rv, rvt.numpy(), rtol=1e-12)
    y_eval = F.batch_norm(x, rm, rv, w, b)
    yt_eval = torch.nn.functional.batch_norm(torch.from_numpy(x), rmt, rvt, torch.from_numpy(w), torch.from_numpy(b))
    np.testing.assert_allclose(y_eval, yt_eval.numpy(), rtol=1e-10, atol=1e-12)


def test_non_contiguous_input(rng):
    base = rng.standard_normal((4, 6, 10, 8)).astype(np.float32)
    x = base[:, ::2, ::-1, ::2]
    a, b = nn.BatchNorm2d(3), nn.BatchNorm2d(3)
    np.testing.assert_array_equal(a(x), b(np.ascontiguousarray(x)))
    np.testing.assert_array_equal(a.running_var, b.running_var)


def test_one_and_two_threads_identical(rng):
    x = rng.standard_normal((8, 16, 20, 20)).astype(np.float32)
    gy = rng.standard_normal(x.shape).astype(np.float32)
    before = pycore.get_num_threads()
    out = []
    try:
        for n in (1, 2):
            pycore.set_num_threads(n)
            m = nn.BatchNorm2d(16)
            out.append((m(x), m.backward(gy), m.weight.grad, m.running_var))
    finally:
        pycore.set_num_threads(before)
    for a, b in zip(*out):
        np.testing.assert_array_equal(a, b)


def test_bad_inputs_raise_clear_errors():
    m = nn.BatchNorm2d(3)
    with pytest.raises(ValueError, match="3 channels"):
        m(np.zeros((2, 4, 3, 3), np.float32))
    with pytest.raises(ValueError, match="4-D"):
        m(np.zeros((2, 3, 3), np.float32))
    with pytest.raises(TypeError, match="BatchNorm2d.*dtype"):
        m(np.zeros((2, 3, 3, 3)))
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        m(np.zeros((1, 3, 1, 1), np.float32))
    assert int(m.num_batches_tracked) == 0
    with pytest.raises(RuntimeError, match="forward first"):
        m.backward(np.zeros((2, 3, 3, 3), np.float32))
    with pytest.raises(ValueError, match="num_features"):
        nn.BatchNorm2d(0)
    with pytest.raises(ValueError, match="running_var"):
        F.batch_norm(np.zeros((2, 3, 2, 2)), np.zeros(3), None)
    with pytest.raises(ValueError, match="weight"):
        F.batch_norm(np.zeros((2, 3, 2, 2)), np.zeros(3), np.ones(3), weight=np.ones(4))
    with pytest.raises(TypeError, match="running_mean"):
        F.batch_norm(np.zeros((2, 3, 2, 2)), np.zeros(3, np.float32), np.ones(3))


def test_without_input_grad_still_accumulates_parameter_grads(rng):
    m = nn.BatchNorm2d(2)
    m.requires_input_grad = False
    x = rng.standard_normal((3, 2, 4, 4)).astype(np.float32)
    m(x)
    assert m.backward(np.ones_like(x)) is None
    np.testing.assert_allclose(m.bias.grad, [48.0, 48.0])


def test_backward_refuses_a_ctx_without_its_statistics(rng):
    """mean and invstd are required: a ctx edited to None raises naming the field, where it
    used to reach the binding (pybind11's signature dump instead of a message)."""
    x = rng.standard_normal((4, 3, 2)).astype(np.float32)
    y, ctx = F.batch_norm_forward(x, None, None, training=True)
    for field in ("mean", "invstd"):
        with pytest.raises(TypeError, match=rf"^{field}: expected a numpy array, got NoneType$"):
            F.batch_norm_backward(np.ones_like(y), ctx._replace(**{field: None}))
    # the optional fields still take None: no weight, and no gradient buffers
    grad_x = F.batch_norm_backward(np.ones_like(y), ctx._replace(weight=None), None, None)
    assert grad_x.shape == x.shape
