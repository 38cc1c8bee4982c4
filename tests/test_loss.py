"""Losses (csrc/loss.cpp) against PyTorch, float64 finite differences and a float64 numpy reference."""
import numpy as np
import pytest

import pycore
import pycore.functional as F
import pycore.nn as nn

try:  # only the PyTorch-parity tests need it (@requires_torch); the rest run without
    import torch
except ImportError:
    torch = None
requires_torch = pytest.mark.skipif(torch is None, reason="PyTorch is not installed: a parity test")

TOL = {np.float32: dict(rtol=2e-5, atol=2e-6), np.float64: dict(rtol=1e-11, atol=1e-12)}
REDUCTIONS = ["mean", "sum", "none"]


def cross_entropy_grad(logits, target, **options):
    """d cross_entropy / d logits through the functional pair (grad_output 1.0)."""
    return F.cross_entropy_backward(1.0, F.cross_entropy_forward(logits, target, **options)[1])


def torch_cross_entropy(logits, target, **options):
    """torch's loss and logits gradient, with pycore's layout (classes last) moved to torch's (N, C, ...)."""
    x = torch.tensor(logits, requires_grad=True)
    weight = options.pop("weight", None)
    weight = None if weight is None else torch.tensor(weight)
    moved = x if x.ndim <= 2 else x.movedim(-1, 1)
    loss = torch.nn.functional.cross_entropy(moved, torch.tensor(target, dtype=torch.int64), weight=weight,
                                             **options)
    loss.backward(torch.ones_like(loss))
    return loss.detach().numpy(), x.grad.numpy()


def cross_entropy_case(rng, shape, dtype, ignore=False, scale=3.0):
    logits = (scale * rng.standard_normal(shape)).astype(dtype)
    target = rng.integers(0, shape[-1], size=shape[:-1])
    if ignore:
        target.reshape(-1)[::3] = -100
    return logits, target


@requires_torch
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(7, 5), (3, 4, 11)])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("label_smoothing", [0.0, 0.15])
@pytest.mark.parametrize("ignore", [False, True])
@pytest.mark.parametrize("weighted", [False, True])
def test_cross_entropy_matches_torch(simd_path, rng, dtype, shape, reduction, label_smoothing, ignore, weighted):
    logits, target = cross_entropy_case(rng, shape, dtype, ignore and shape[0] > 1)
    weight = rng.uniform(0.2, 2.0, shape[-1]).astype(dtype) if weighted else None
    loss_fn = nn.CrossEntropyLoss(weight=weight, reduction=reduction, label_smoothing=label_smoothing)
    loss = loss_fn(logits, target)
    grad = loss_fn.backward()
    ref_loss, ref_grad = torch_cross_entropy(logits, target, weight=weight, reduction=reduction,
                                             label_smoothing=label_smoothing)
    if reduction == "none":
        assert isinstance(loss, np.ndarray) and loss.shape == target.shape and loss.dtype == dtype
    else:
        assert isinstance(loss, float)
    np.testing.assert_allclose(loss, ref_loss, **TOL[dtype])
    assert grad.shape == logits.shape and grad.dtype == dtype
    np.testing.assert_allclose(grad, ref_grad, **TOL[dtype])
    # The module's backward reuses its forward's checks; the functional form redoes them: same numbers.
    np.testing.assert_array_equal(grad, cross_entropy_grad(logits, target, weight=weight,
                                                                 reduction=reduction, label_smoothing=label_smoothing))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_cross_entropy_huge_logits_match_float64_reference(simd_path, dtype):
    logits = np.array([[1e4, -1e4, 0.0, 1e4 - 3.0], [-1e4, -1e4, -1e4 + 1.0, -1e4 + 0.5], [1e4, 1e4, 1e4, 1e4]],
                      dtype=dtype)
    target = np.array([1, 2, 0])
    loss_fn = nn.CrossEntropyLoss(reduction="none", label_smoothing=0.1)
    loss = loss_fn(logits, target)
    grad = loss_fn.backward()
    # float64 reference written here: log-softmax with the row max subtracted
    x = logits.astype(np.float64)
    shifted = x - x.max(axis=1, keepdims=True)
    logp = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    onehot = np.eye(4)[target]
    q = 0.9 * onehot + 0.1 / 4
    ref_loss = -(q * logp).sum(axis=1)
    ref_grad = np.exp(logp) - q
    assert np.isfinite(loss).all() and np.isfinite(grad).all()
    np.testing.assert_allclose(loss, ref_loss, rtol=1e-6 if dtype == np.float32 else 1e-12, atol=1e-3)
    np.testing.assert_allclose(grad, ref_grad, rtol=1e-5, atol=1e-6)


def finite_difference(f, x, eps=1e-6):
    grad = np.zeros_like(x)
    for index in np.ndindex(x.shape):
        old = x[index]
        x[index] = old + eps
        plus = f(x)
        x[index] = old - eps
        minus = f(x)
        x[index] = old
        grad[index] = (plus - minus) / (2 * eps)
    return grad


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_cross_entropy_gradient_finite_differences(rng, reduction):
    logits, target = cross_entropy_case(rng, (2, 3, 5), np.float64, ignore=True)
    weight = rng.uniform(0.5, 1.5, 5)
    options = dict(weight=weight, ignore_index=-100, reduction=reduction, label_smoothing=0.2)
    numeric = finite_difference(lambda x: F.cross_entropy(x, target, **options), logits.copy())
    analytic = cross_entropy_grad(logits, target, **options)
    np.testing.assert_allclose(analytic, numeric, rtol=1e-6, atol=1e-8)


@requires_torch
def test_cross_entropy_none_with_grad_array_and_scalar_grad(rng):
    logits, target = cross_entropy_case(rng, (4, 3, 6), np.float64, ignore=True)
    upstream = rng.standard_normal(target.shape)
    loss_fn = nn.CrossEntropyLoss(reduction="none", label_smoothing=0.05)
    loss_fn(logits, target)
    grad = loss_fn.backward(upstream)
    x = torch.tensor(logits, requires_grad=True)
    loss = torch.nn.functional.cross_entropy(x.movedim(-1, 1), torch.tensor(target), reduction="none",
                                             label_smoothing=0.05)
    loss.backward(torch.tensor(upstream))
    np.testing.assert_allclose(grad, x.grad.numpy(), rtol=1e-12, atol=1e-13)
    loss_fn = nn.CrossEntropyLoss(reduction="mean")
    loss_fn(logits, target)
    np.testing.assert_allclose(loss_fn.backward(2.5), 2.5 * cross_entropy_grad(logits, target),
                               rtol=1e-14)


@pytest.mark.parametrize("target_dtype", [np.int8, np.uint8, np.int16, np.int32, np.uint32, np.int64])
def test_cross_entropy_any_integer_target_dtype(rng, target_dtype):
    logits, target = cross_entropy_case(rng, (6, 4), np.float64)
    expected = F.cross_entropy(logits, target)
    assert F.cross_entropy(logits, target.astype(target_dtype)) == expected


@requires_torch
def test_cross_entropy_all_ignored_gives_nan_mean_and_zero_grad(rng):
    logits, _ = cross_entropy_case(rng, (3, 4), np.float64)
    target = np.full(3, 7)
    loss_fn = nn.CrossEntropyLoss(ignore_index=7)
    assert np.isnan(loss_fn(logits, target))
    ref, _ = torch_cross_entropy(logits, target, ignore_index=7)
    assert np.isnan(ref)
    assert F.cross_entropy(logits, target, ignore_index=7, reduction="sum") == 0.0
    np.testing.assert_array_equal(cross_entropy_grad(logits, target, ignore_index=7, reduction="sum"), 0)
    # as in PyTorch: ignored rows get zeros even when the mean's denominator is 0 ...
    np.testing.assert_array_equal(cross_entropy_grad(logits, target, ignore_index=7), 0)
    # ... and rows whose class weights sum to 0 get nan
    weight = np.array([1.0, 0.0, 0.0, 1.0])
    target = np.array([1, 7, 2])
    grad = cross_entropy_grad(logits, target, weight=weight, ignore_index=7)
    _, ref_grad = torch_cross_entropy(logits, target, weight=weight, ignore_index=7)
    np.testing.assert_array_equal(np.isnan(grad), np.isnan(ref_grad))


@requires_torch
def test_cross_entropy_ignore_index_inside_class_range(rng):
    logits, target = cross_entropy_case(rng, (9, 4), np.float64)
    ours = F.cross_entropy(logits, target, ignore_index=2, label_smoothing=0.3)
    ref, _ = torch_cross_entropy(logits, target, ignore_index=2, label_smoothing=0.3)
    np.testing.assert_allclose(ours, ref, rtol=1e-12)


@requires_torch
def test_cross_entropy_unbatched_logits(rng):
    logits = rng.standard_normal(6)
    ours = F.cross_entropy(logits, np.array(4))
    ref, _ = torch_cross_entropy(logits, np.array(4))
    np.testing.assert_allclose(ours, ref, rtol=1e-12)


@pytest.mark.parametrize("layout", ["fortran", "transposed", "negative", "readonly"])
def test_cross_entropy_strided_inputs(rng, layout):
    base, target = cross_entropy_case(rng, (6, 5), np.float32)
    if layout == "fortran":
        logits = np.asfortranarray(base)
    elif layout == "transposed":
        logits = np.ascontiguousarray(base.T).T
    elif layout == "negative":
        logits = np.ascontiguousarray(base[::-1])[::-1]
    else:
        logits = base.copy()
        logits.flags.writeable = False
    target_view = np.ascontiguousarray(np.stack([target, target], axis=1))[:, 0]
    loss_fn = nn.CrossEntropyLoss(label_smoothing=0.1)
    assert loss_fn(logits, target_view) == F.cross_entropy(base, target, label_smoothing=0.1)
    np.testing.assert_array_equal(loss_fn.backward(),
                                  cross_entropy_grad(base, target, label_smoothing=0.1))


def test_cross_entropy_same_bits_on_one_and_two_threads(rng):
    logits, target = cross_entropy_case(rng, (600, 70), np.float32)
    before = pycore.get_num_threads()
    try:
        results = []
        for threads in (1, 2):
            pycore.set_num_threads(threads)
            loss_fn = nn.CrossEntropyLoss(label_smoothing=0.1)
            results.append((loss_fn(logits, target), loss_fn.backward()))
    finally:
        pycore.set_num_threads(before)
    assert results[0][0] == results[1][0]
    np.testing.assert_array_equal(results[0][1], results[1][1])


def test_cross_entropy_bad_inputs(rng):
    logits, target = cross_entropy_case(rng, (4, 3), np.float32)
    with pytest.raises(TypeError, match="target: expected an integer array"):
        F.cross_entropy(logits, target.astype(np.float32))
    with pytest.raises(ValueError, match="class index 3 at position"):
        F.cross_entropy(logits, np.array([0, 1, 3, 2]))
    with pytest.raises(ValueError, match="class index -1"):
        F.cross_entropy(logits, np.array([0, -1, 2, 2]))
    with pytest.raises(ValueError, match=r"target: expected shape \(4,\)"):
        F.cross_entropy(logits, np.array([0, 1, 2]))
    with pytest.raises(ValueError, match=r"target: expected shape \(2, 5\)"):
        F.cross_entropy(np.zeros((2, 5, 3)), np.zeros((2, 3), dtype=np.int64))
    with pytest.raises(TypeError, match="input: expected a float32 or float64 array"):
        F.cross_entropy(logits.astype(np.int32), target)
    with pytest.raises(ValueError, match="reduction"):
        nn.CrossEntropyLoss(reduction="avg")
    with pytest.raises(ValueError, match="label_smoothing"):
        nn.CrossEntropyLoss(label_smoothing=1.5)
    with pytest.raises(ValueError, match=r"weight: expected shape \(3,\)"):
        F.cross_entropy(logits, target, weight=np.ones(4, dtype=np.float32))
    loss_fn = nn.CrossEntropyLoss()
    with pytest.raises(RuntimeError, match="no forward"):
        loss_fn.backward()
    loss_fn(logits, target)
    loss_fn.backward()
    with pytest.raises(RuntimeError, match="no forward"):
        loss_fn.backward()
    loss_fn(logits, target)
    with pytest.raises(TypeError, match="grad_output: expected a number"):
        loss_fn.backward(np.ones(4))


def test_cross_entropy_under_no_grad_keeps_nothing(rng):
    logits, target = cross_entropy_case(rng, (4, 3), np.float32)
    loss_fn = nn.CrossEntropyLoss()
    with pycore.no_grad():
        loss_fn(logits, target)
    with pytest.raises(RuntimeError):
        loss_fn.backward()


# ----------------------------------------------------------------------------
# MSE and BCE with logits


def torch_elementwise(fn, x, y, grad=None, **options):
    xt = torch.tensor(x, requires_grad=True)
    loss = fn(xt, torch.tensor(y), **options)
    loss.backward(torch.ones_like(loss) if grad is None else torch.tensor(grad))
    return loss.detach().numpy(), xt.grad.numpy()


@requires_torch
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(5,), (4, 7), (2, 3, 9000)])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_mse_matches_torch(rng, dtype, shape, reduction):
    x = rng.standard_normal(shape).astype(dtype)
    y = rng.standard_normal(shape).astype(dtype)
    loss_fn = nn.MSELoss(reduction=reduction)
    loss = loss_fn(x, y)
    grad = loss_fn.backward()
    ref_loss, ref_grad = torch_elementwise(torch.nn.functional.mse_loss, x, y, reduction=reduction)
    tol = TOL[dtype] if dtype == np.float64 else dict(rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(loss, ref_loss, **tol)
    assert grad.dtype == dtype
    np.testing.assert_allclose(grad, ref_grad, **tol)


@requires_torch
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("pos_weight", [None, "per_class", "scalar"])
def test_bce_with_logits_matches_torch(rng, dtype, reduction, pos_weight):
    x = (4 * rng.standard_normal((6, 5))).astype(dtype)
    x[0, :3] = [80.0, -80.0, 0.0]  # exp(80) overflows float32: the stable form must not
    y = rng.uniform(0, 1, (6, 5)).astype(dtype)
    y[1] = np.round(y[1])
    pw = {None: None, "per_class": rng.uniform(0.5, 3, 5), "scalar": np.array([2.5])}[pos_weight]
    pw = None if pw is None else pw.astype(dtype)
    loss_fn = nn.BCEWithLogitsLoss(reduction=reduction, pos_weight=pw)
    loss = loss_fn(x, y)
    grad = loss_fn.backward()
    ref_loss, ref_grad = torch_elementwise(torch.nn.functional.binary_cross_entropy_with_logits, x, y,
                                           reduction=reduction, pos_weight=None if pw is None else torch.tensor(pw))
    tol = TOL[dtype] if dtype == np.float64 else dict(rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(loss, ref_loss, **tol)
    assert np.isfinite(grad).all()
    np.testing.assert_allclose(grad, ref_grad, **tol)


def test_elementwise_gradients_finite_differences(rng):
    x = rng.standard_normal((3, 4))
    y = rng.uniform(0, 1, (3, 4))
    pw = rng.uniform(0.5, 2, 4)
    for loss, forward, backward, extra in [
            (F.mse_loss, F.mse_loss_forward, F.mse_loss_backward, {}),
            (F.binary_cross_entropy_with_logits, F.binary_cross_entropy_with_logits_forward,
             F.binary_cross_entropy_with_logits_backward, {"pos_weight": pw})]:
        numeric = finite_difference(lambda v: loss(v, y, reduction="sum", **extra), x.copy())
        analytic = backward(1.0, forward(x, y, reduction="sum", **extra)[1])
        np.testing.assert_allclose(analytic, numeric, rtol=1e-6, atol=1e-8)


@requires_torch
def test_elementwise_reduction_none_with_grad_array(rng):
    x, y = rng.standard_normal((3, 5)), rng.uniform(0, 1, (3, 5))
    upstream = rng.standard_normal((3, 5))
    loss_fn = nn.BCEWithLogitsLoss(reduction="none")
    loss_fn(x, y)
    _, ref_grad = torch_elementwise(torch.nn.functional.binary_cross_entropy_with_logits, x, y, upstream,
                                    reduction="none")
    np.testing.assert_allclose(loss_fn.backward(upstream), ref_grad, rtol=1e-12)


def test_elementwise_sums_same_bits_on_one_and_two_threads(rng):
    x = rng.standard_normal(100_003).astype(np.float32)
    y = rng.standard_normal(100_003).astype(np.float32)
    before = pycore.get_num_threads()
    try:
        pycore.set_num_threads(1)
        one = (F.mse_loss(x, y), F.binary_cross_entropy_with_logits(x, y))
        pycore.set_num_threads(2)
        two = (F.mse_loss(x, y), F.binary_cross_entropy_with_logits(x, y))
    finally:
        pycore.set_num_threads(before)
    assert one == two


def test_elementwise_bad_inputs(rng):
    x = rng.standard_normal((3, 4)).astype(np.float32)
    with pytest.raises(TypeError, match="target: dtype float64 does not match"):
        F.mse_loss(x, x.astype(np.float64))
    with pytest.raises(ValueError, match=r"target: expected the input's shape \(3, 4\)"):
        nn.MSELoss()(x, x[:2])
    with pytest.raises(ValueError, match="pos_weight: expected 1 or 4 values"):
        F.binary_cross_entropy_with_logits(x, x, pos_weight=np.ones(3, dtype=np.float32))
    with pytest.raises(ValueError, match="reduction"):
        nn.BCEWithLogitsLoss(reduction="total")
    with pytest.raises(ValueError, match=r"grad_output: expected a scalar or shape \(3, 4\)"):
        loss_fn = nn.MSELoss(reduction="none")
        loss_fn(x, x)
        loss_fn.backward(np.ones(3))
    with pytest.raises(RuntimeError):
        nn.BCEWithLogitsLoss().backward()


def test_mean_over_empty_input_is_nan():
    empty = np.zeros((0, 3))
    assert np.isnan(F.mse_loss(empty, empty))
    assert F.binary_cross_entropy_with_logits(empty, empty, reduction="sum") == 0.0


def test_cross_entropy_one_row_one_class():
    loss_fn = nn.CrossEntropyLoss()
    assert loss_fn(np.array([[3.0]]), np.array([0])) == 0.0
    np.testing.assert_array_equal(loss_fn.backward(), [[0.0]])


def test_cross_entropy_nan_logit_gives_nan_loss():
    logits = np.array([[0.0, np.nan, 1.0], [0.5, 0.2, 0.1]], dtype=np.float32)
    losses = F.cross_entropy(logits, np.array([0, 1]), reduction="none")
    assert np.isnan(losses[0]) and np.isfinite(losses[1])
