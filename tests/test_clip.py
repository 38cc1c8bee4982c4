"""clip_grad_norm_ and clip_grad_value_ against torch.nn.utils."""
import math

import numpy as np
import pytest

from pycore.nn import Parameter
from pycore.optim import clip_grad_norm_, clip_grad_value_

torch = pytest.importorskip("torch")


def pair(rng, dtype, scale=1.0):
    shapes = [(3, 4), (5,), (2, 2, 3)]
    ours, ref = [], []
    for shape in shapes:
        p = Parameter(np.zeros(shape, dtype))
        p.grad[...] = scale * rng.standard_normal(shape)
        t = torch.zeros(shape, dtype=torch.float32 if dtype == np.float32 else torch.float64, requires_grad=True)
        t.grad = torch.tensor(p.grad.copy())
        ours.append(p)
        ref.append(t)
    return ours, ref


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("norm_type", [2.0, 1.0, 3.0, float("inf")])
@pytest.mark.parametrize("max_norm", [0.3, 1e3])
def test_clip_grad_norm_matches_torch(rng, dtype, norm_type, max_norm):
    ours, ref = pair(rng, dtype)
    total = clip_grad_norm_(ours, max_norm, norm_type=norm_type)
    t_total = torch.nn.utils.clip_grad_norm_(ref, max_norm, norm_type=norm_type)
    tol = dict(rtol=1e-5, atol=1e-7) if dtype == np.float32 else dict(rtol=1e-12, atol=0)
    assert isinstance(total, float)
    np.testing.assert_allclose(total, t_total.item(), **tol)
    for p, t in zip(ours, ref):
        assert p.grad.dtype == dtype
        np.testing.assert_allclose(p.grad, t.grad.numpy(), **tol)
    if max_norm < total:
        clipped = np.linalg.norm(np.concatenate([p.grad.ravel() for p in ours]).astype(np.float64),
                                 ord=np.inf if math.isinf(norm_type) else norm_type)
        assert clipped == pytest.approx(max_norm, rel=1e-4)


def test_single_parameter_and_generator(rng):
    ours, ref = pair(rng, np.float64, scale=10.0)
    total = clip_grad_norm_(ours[0], 1.0)
    t_total = torch.nn.utils.clip_grad_norm_(ref[0], 1.0)
    assert total == pytest.approx(t_total.item())
    np.testing.assert_allclose(ours[0].grad, ref[0].grad.numpy())
    assert clip_grad_norm_((p for p in ours[1:]), 1.0) > 1.0
    assert clip_grad_norm_([], 1.0) == 0.0


def test_nonfinite_total(rng):
    ours, _ = pair(rng, np.float32)
    ours[1].grad[2] = np.nan
    before = [p.grad.copy() for p in ours]
    with pytest.raises(RuntimeError, match="nan"):
        clip_grad_norm_(ours, 1.0, error_if_nonfinite=True)
    for p, b in zip(ours, before):
        np.testing.assert_array_equal(p.grad, b)
    assert math.isnan(clip_grad_norm_(ours, 1.0))
    assert np.isnan(ours[0].grad).all()  # as PyTorch: a NaN total scales every grad to NaN


@pytest.mark.parametrize("clip_value", [0.0, 0.5, 100.0])
def test_clip_grad_value_matches_torch(rng, clip_value):
    ours, ref = pair(rng, np.float32)
    clip_grad_value_(ours, clip_value)
    torch.nn.utils.clip_grad_value_(ref, clip_value)
    for p, t in zip(ours, ref):
        np.testing.assert_array_equal(p.grad, t.grad.numpy())


def test_bad_arguments(rng):
    ours, _ = pair(rng, np.float32)
    with pytest.raises(TypeError, match="Parameter"):
        clip_grad_norm_([ours[0], np.zeros(3)], 1.0)
    with pytest.raises(TypeError, match="parameters"):
        clip_grad_norm_(3, 1.0)
    with pytest.raises(TypeError, match="max_norm"):
        clip_grad_norm_(ours, "1")
    with pytest.raises(ValueError, match="norm_type"):
        clip_grad_norm_(ours, 1.0, norm_type=0)
    with pytest.raises(ValueError, match="clip_value"):
        clip_grad_value_(ours, -1.0)
    with pytest.raises(TypeError, match="clip_value"):
        clip_grad_value_(ours, None)


@pytest.mark.parametrize("norm_type", [2.0, float("inf")])
def test_parameters_without_gradient_are_skipped_like_torch(rng, norm_type):
    """grad None (never computed, or set to None): skipped in the norm and left None, as in PyTorch."""
    ours, ref = pair(rng, np.float64)
    ours[1].grad, ref[1].grad = None, None
    total = clip_grad_norm_(ours, max_norm=0.5, norm_type=norm_type)
    expected = torch.nn.utils.clip_grad_norm_(ref, max_norm=0.5, norm_type=norm_type)
    assert total == pytest.approx(float(expected), rel=1e-12)
    assert ours[1].grad is None
    for p, t in zip(ours, ref):
        if p.grad is not None:
            np.testing.assert_allclose(p.grad, t.grad.numpy(), rtol=1e-12)
    clip_grad_value_(ours, 0.01)
    torch.nn.utils.clip_grad_value_(ref, 0.01)
    assert ours[1].grad is None
    np.testing.assert_array_equal(ours[0].grad, ref[0].grad.numpy())
    only_none = Parameter(np.zeros(3))
    only_none.grad = None
    assert clip_grad_norm_([only_none], 1.0) == 0.0
